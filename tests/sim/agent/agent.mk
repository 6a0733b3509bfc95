# tests/sim/agent/ - the device agent simulator (SP-Agent stand-in).
PROGS += agent
agent_SRCS := tests/sim/agent/agent.c
agent_LIBS := vse base
