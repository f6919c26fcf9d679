"""The alert notifier: alert events from topic `alerts` → webhooks and e-mails (`controlroom notifier`).

Pure modules: `formats` (json and Alertmanager v4 bodies, vi/en e-mails), `policy` (retries, delivery records);
subscriptions (documents, validation, routing) and signing are shared with the API, in `controlroom.alerts`.
I/O: `channels` (httpx, smtplib) and `service` (the Kafka loop; its docstring states the delivery guarantee).

A webhook receiver checks each request on the raw body bytes before parsing them::

    from controlroom.alerts.signing import verify_signature
    if not verify_signature(secret, raw_body, request.headers.get("X-Signature")):
        return 401
    # then drop a repeated Idempotency-Key (<alert_id>:<seq>:<subscription_id>): at-least-once delivery

where `secret` = controlroom.alerts.signing.subscription_secret(NOTIFY_SIGNING_KEY, subscription_id), handed to the
receiver's owner once; it is stored nowhere.
"""
