"""People and credentials: keys, the admin bearer, user JWTs, email login, allowances."""
