"""Operations: what keeps `telepay run` honest and recoverable without a human at night
(start-up waits, signals, the poller's supervision, health, metrics, alerts, watchdog)."""
