"""Store modules of the room area: one module per group of tables (see 0010_rooms.sql)."""
