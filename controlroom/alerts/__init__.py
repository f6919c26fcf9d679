"""Alert domain code shared by the API, the alerter and the notifier. Pure code, no I/O.

`rules` (alert rules as data: parsing, validation, effective versions), `evaluate` (rules on windows, quality
counts and a clock → conditions), `lifecycle` (conditions → alert events), `core` (the alerter's state machine:
inputs → events, snapshots), `silences` (what a silence may match and the one matcher), `subscriptions` (who
hears of which alert events) and `signing` (webhook signatures). The alerter (streams/alerter.py) and the
API's backtests run the same code.
"""
