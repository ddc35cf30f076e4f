"""Operations tooling that is not shop logic: the local load balancer for scale-out runs."""
