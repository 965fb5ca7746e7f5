"""The example agent: a dental clinic receptionist (dental-receptionist.toml) and the clinic's
booking system it calls (clinic.py). An example of what an admin writes, not agent code."""
