"""Stream positions and tokens: the lowest layer that rooms, sync, e2ee and federation share."""
