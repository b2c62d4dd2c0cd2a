"""HTTP clients of the providers; they know their API and nothing about files."""
