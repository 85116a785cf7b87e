"""TelePay: paid access to private Telegram channels, donations, automatic payouts."""
