"""Live alerts: the analysis rules evaluated while a run trains, delivered to the training log and
a webhook (``watch.AlertWatcher``, ``webhook.WebhookSender``). Torch-free; the Monitor and the HF /
TRL callbacks build a watcher when asked to (``alerts=``, ``alert_webhook=``, ``halt_on=``)."""
