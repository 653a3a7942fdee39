"""The Faust worker: ``app`` (wiring, the batch processor), its state in Faust tables
(``state``), partition watchdog (``watchdog``), metrics, runtime tuning and the inventory
follower. Imports the stages and the outputs; only commands import it."""
