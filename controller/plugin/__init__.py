"""`kubectl presence`: self-service maintenance (docs/maintenance.md, "kubectl presence")."""
