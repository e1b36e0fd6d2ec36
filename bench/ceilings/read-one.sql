-- The row `competition(id) { … organizer { id name } }` reads, one competition of the
-- scenario's 200 at random (bench_ids numbers them), in one statement.
\set n random(1, 200)
SELECT c.id, c.title, c.capacity, c.registered_count, c.reg_deadline, c.start_date, u.id, u.name
  FROM competitions c JOIN users u ON u.id = c.organizer_id
 WHERE c.id = (SELECT id FROM bench_ids WHERE n = :n);
