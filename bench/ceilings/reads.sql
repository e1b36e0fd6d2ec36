-- The rows `competitions(first: 20) { … organizer { name } }` reads, run against the
-- scenario's own database.
SELECT c.id, c.title, c.capacity, c.registered_count, c.reg_deadline, c.start_date, u.id, u.name
  FROM competitions c JOIN users u ON u.id = c.organizer_id
 ORDER BY c.created_at DESC, c.id DESC
 LIMIT 21;
