from tidings.worker.app import main

main()
