"""The IVR's node kinds, one module per kind of flow node (switchboard.flowdef.flow); kinds.py holds the
tables that dispatch to them by node type."""
