-- Chert's seen signatures, by expiry: the sweep of expired ones
-- (`DELETE … WHERE expires_at <= now`, run by the signed requests of one
-- second in 64) read the whole table without it, once per request of that
-- second, and the table holds every signature of the last ten minutes.
CREATE INDEX replay_nonces_expiry ON replay_nonces(expires_at);
