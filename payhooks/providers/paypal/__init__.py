"""PayPal: two doors, REST webhooks (``paypal``) and IPN (``paypal-ipn``).

REST webhooks are trusted once their RSA-SHA256 signature verifies against a certificate
fetched from PayPal and chained to trusted roots. IPN is signed by nothing: its body is
trusted only when PayPal answers ``VERIFIED`` to the job posting it back (``ipn_step``).
"""
