import MicroSSE
