from sandbox_mcp.main import main

main()
