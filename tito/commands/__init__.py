"""One file per command group; each registers its commands on the Typer app in tito.cli."""
