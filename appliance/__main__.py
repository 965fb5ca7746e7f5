"""`python -m appliance` is `appliancectl`."""

from .cli.main import main

main()
