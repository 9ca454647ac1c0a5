"""A project on disk: finding its matrix files, opening it (the one chain load -> normalise ->
expand -> plan), rendering it, and `ciwheels init`.

May import: everything below it (core .. builder)."""
