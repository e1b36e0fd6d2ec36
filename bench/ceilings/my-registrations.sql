-- The rows `myRegistrations { … competition { … organizer { id name } } }` reads for one
-- of the scenario's 500 participants at random (bench_users numbers them), in one
-- statement.
\set n random(1, 500)
SELECT r.id, r.status, c.id, c.title, c.start_date, u.id, u.name
  FROM registrations r
  JOIN competitions c ON c.id = r.competition_id
  JOIN users u ON u.id = c.organizer_id
 WHERE r.user_id = (SELECT id FROM bench_users WHERE n = :n)
 ORDER BY r.created_at DESC, r.id DESC;
