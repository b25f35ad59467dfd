"""Model Context Protocol: HealTrace's tools served to MCP clients, and external MCP
servers' tools mounted into the orchestrator."""
