"""The vocabulary of log rules (matcher data model, advice arithmetic): pure, below engines/ and doctor/,
so each engine module can carry its own rule table and the doctor walks them all."""
