"""GivEnergy inverters over the WiFi/LAN dongle's local Modbus-over-TCP (port 8899), GivTCP-compatible."""
