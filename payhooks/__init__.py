"""payhooks: payment-provider webhooks to Nexudus invoices, exactly once."""
