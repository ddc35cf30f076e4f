"""`python -m bench` (`make bench`): latency, throughput and memory of the assistant against Rasa's template bot."""
