"""Alert domain code shared by the API, the alerter and the notifier. Pure code, no I/O.

`rules` (alert rules as data: parsing, validation, effective versions), `silences` (what a silence may match
and the one matcher), `subscriptions` (who hears of which alert events) and `signing` (webhook signatures).
"""
