-- Media: the transport towards a trunk for originate (UDP by default, TCP when the trunk asks for it).
ALTER TABLE sip_trunks
    ADD COLUMN outbound_transport text NOT NULL DEFAULT 'udp' CHECK (outbound_transport IN ('udp', 'tcp'));
