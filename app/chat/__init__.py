"""One chat request, whatever its ingress: the intake, the exchange, its deadlines and outlets, a handler each."""
