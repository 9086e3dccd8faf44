"""The portal's own pages: login and logout, the product catalogue, health and keys."""
