from tidings.server.app import main

main()
