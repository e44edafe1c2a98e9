"""Results a person would rather look at than read: tables and plots per iteration."""
