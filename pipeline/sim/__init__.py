"""Demo and test data: the fleet simulator (``simulate``) and its attack scenarios
(``scenarios``)."""
