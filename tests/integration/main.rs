mod workflow;
