"""Small, tested example code the design-pattern lessons import, one module per lesson."""
