"""Version 1 of the API's routes, one module each; app.api.main mounts them under /api/v1."""
