-- Readings flagged as faulty (GPS jumps, impossible speeds) stay in the table but are excluded from tracks.
ALTER TABLE positions ADD COLUMN IF NOT EXISTS faulty boolean NOT NULL DEFAULT false;
