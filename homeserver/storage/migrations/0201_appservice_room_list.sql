-- Rooms an application service published in its own third-party network's
-- room directory (PUT /directory/list/appservice/{networkId}/{roomId}).
-- Kept apart from rooms.is_public: /publicRooms lists them only for that
-- network's third_party_instance_id ("{appservice id}|{network id}") or with
-- include_all_networks, as Synapse does.

CREATE TABLE appservice_room_list (
    appservice_id TEXT NOT NULL,
    network_id TEXT NOT NULL,
    room_nid BIGINT NOT NULL,
    PRIMARY KEY (appservice_id, network_id, room_nid)
);
