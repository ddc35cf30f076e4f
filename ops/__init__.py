"""Operations tooling that is not shop logic: the local load balancer for scale-out runs, and the
launcher that starts the real servers on free ports for the end-to-end tests and the benchmark."""
