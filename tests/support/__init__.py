"""Helpers shared by the tests: change builders, a landing-zone writer that follows the contract
(``core/landing_format.py``), and readers of the warehouse's state."""
