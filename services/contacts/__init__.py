"""Contacts: the life of one contact (a call from arrival to wrap-up) and its stored record."""
