-- A message's embedding kept in its row. pgvector's type is stored out of
-- line (TOAST) once a row passes 2 kB, which a 768-dimensional vector alone
-- does: reading one then costs the TOAST index and two chunks besides the
-- row. An exact search over a filtered set (a session, a small
-- organization) reads every candidate's vector, so that was most of its
-- time. Inline, a vector is read with its row. The texts stay toastable,
-- so a row still fits in a page. Rows written before keep their TOASTed
-- vector until they are written again (the worker's next embedding of
-- them, or VACUUM FULL).

ALTER TABLE messages ALTER COLUMN embedding SET STORAGE PLAIN;
