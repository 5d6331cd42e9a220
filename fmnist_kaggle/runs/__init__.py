"""K-fold runs: the data a run trains on (`trainset`), its identity (`identity`), one (fold,
seed) unit (`unit`), where units train (`executors/`), honest pseudo-labels (`pseudo`), the
driver that opens, plans, drives, records and concludes runs (`driver`), reading run folders
(`store`) and re-predicting another test file (`predict`)."""
