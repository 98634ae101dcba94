"""Who is calling: passwords, JWT access/refresh tokens, revocation and login rate limits."""
