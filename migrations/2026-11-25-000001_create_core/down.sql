DROP TABLE mailbox;
DROP TABLE registrations;
DROP TABLE competitions;
DROP TABLE users;
