"""TWM core library."""
