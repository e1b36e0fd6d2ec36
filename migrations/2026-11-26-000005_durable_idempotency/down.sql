ALTER TABLE mailbox DROP CONSTRAINT mailbox_once_per_activation;
DELETE FROM mailbox m USING mailbox newer
 WHERE m.registration_id = newer.registration_id AND m.kind = newer.kind
   AND m.activation < newer.activation;
ALTER TABLE mailbox ADD CONSTRAINT mailbox_once_per_kind UNIQUE (registration_id, kind);
ALTER TABLE mailbox DROP COLUMN activation;
ALTER TABLE registrations DROP COLUMN activation;
DROP TABLE deployment;
DROP TABLE idempotency_keys;
