"""Online streamed surrogate training (Melissa-style): protocol (wire format), client (the solver
side API and the FOM client), buffers (FIFO, FIRO, Reservoir on the training device), server
(receiver thread + training loop + checkpoints), launcher (the ensemble of client processes)."""
