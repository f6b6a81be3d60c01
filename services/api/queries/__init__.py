"""The SQL of the API's resources, one module per resource: handlers decide and answer, these modules read
and write. Every function takes a connection already inside the caller's tenant transaction (RLS)."""
