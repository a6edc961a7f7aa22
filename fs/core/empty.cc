// Placeholder translation unit for library targets that have no sources yet.
