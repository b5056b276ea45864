# main.py of a board with app bundles (written by `mpota provision --bundles`): the application
# is the active bundle's main.py, chosen by boot.py; with none installed yet, the update service
# runs alone and waits for the first bundle.
import ota.bundle_boot

ota.bundle_boot.run()
