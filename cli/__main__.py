from tidings.cli.main import main

main(prog_name="tidings")
